"""The asyncio I/O layer: thin pumps around the sans-I/O core."""
