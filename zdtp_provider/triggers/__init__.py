"""Triggers: async waits in the triggerer, each with an ``on_kill`` that removes its workload."""
