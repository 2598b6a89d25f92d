"""The state layer: the schema, the one owner of the database, and every state change."""
