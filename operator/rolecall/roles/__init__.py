"""Role reconcilers: what each role kind's resource asks for, carried out with the shared core."""
