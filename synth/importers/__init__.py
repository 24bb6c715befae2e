"""Importers: environments and tasks made from other projects' task sources (reasoning-gym generators, MCP
servers), written in toolgym's environment format so the runtime treats them like any other."""
