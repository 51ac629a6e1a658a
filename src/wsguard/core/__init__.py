"""The sans-I/O policy core.

Everything under ``wsguard.core`` takes values (an upgrade request, a message, the time) and
returns decisions. It never imports asyncio, aiohttp, redis or socket, never reads the
environment and never reads the clock: time comes in as ``now`` arguments. A test parses the
imports of every module here to keep that wall standing.
"""
