"""The Adapter service: DISCA adaptation sessions, durable in a session store."""
