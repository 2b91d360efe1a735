"""The learning side: agents, replay buffers, networks."""
