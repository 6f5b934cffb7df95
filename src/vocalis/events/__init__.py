"""The transactional outbox: events written with the state change, dispatched afterwards."""
