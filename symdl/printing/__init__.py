"""Printers from the catalog's SymPy expressions to NumPy source and LaTeX."""
