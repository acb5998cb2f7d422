"""Reading and writing weights: safe loading, layout conversion, atomic saving."""
