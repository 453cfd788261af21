"""TURN: short-lived credentials for coturn (TURN REST API) and coturn configuration."""
