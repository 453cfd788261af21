"""Sans-IO protocol state machines: time is an argument, outputs are polled."""
