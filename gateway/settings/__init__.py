"""Configuration: ``phigate.yaml`` validated into frozen settings, with located errors."""
