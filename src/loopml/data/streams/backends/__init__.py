"""Stream source backends, one module per broker; each imports its client only when used."""
