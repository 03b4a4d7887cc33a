-- only a comment

