"""Building blocks shared by several algorithms (never copied between them)."""
