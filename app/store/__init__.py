"""The storage floor: the database, its tables, and one store per resource returning typed
records. It imports no other floor of the service."""
