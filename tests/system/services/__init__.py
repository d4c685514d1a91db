"""Native stand-ins for the services of ``docker-compose.yaml`` (system tests only)."""
