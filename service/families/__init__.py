"""Model families served: one package each (engine, service, schemas, routes); the list is in registry.py."""
