"""Rating tasks: the builder (items -> task pages, attention checks, plans) and its Jinja templates."""
