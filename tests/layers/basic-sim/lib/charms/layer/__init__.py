"""charms.layer: each layer's library modules live here (basic-sim stand-in)."""
