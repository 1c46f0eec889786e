"""The soak: many jobs through random link, broker and service faults, on either device runtime."""
