"""Cross-cutting pieces: settings, database, errors, logging, money."""
