"""Operations: Prometheus metrics, health and readiness, alert wiring and JSON logs."""
