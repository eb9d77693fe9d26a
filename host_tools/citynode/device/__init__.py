"""One board at the bench: board files, flashing, keys, production mode, the device registry, its exports and labels."""
