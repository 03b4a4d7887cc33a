//! refinery applying a generated set at start-up, as its README shows.

mod n10 {
    refinery::embed_migrations!("sets/flyway/n10");
}
mod n100 {
    refinery::embed_migrations!("sets/flyway/n100");
}
mod n1000 {
    refinery::embed_migrations!("sets/flyway/n1000");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = match dbprep_peers::size_from_args() {
        10 => n10::migrations::runner(),
        100 => n100::migrations::runner(),
        _ => n1000::migrations::runner(),
    };
    let (mut client, connection) =
        tokio_postgres::connect(&dbprep_peers::database_url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
    tokio::spawn(connection);
    runner
        .run_async(&mut client)
        .await
        .expect("refinery applies the set");
}
