"""What every DIAL service shares: config, validation, errors, metrics, bootstrap."""
