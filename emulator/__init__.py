"""A CUCM emulator: OPTIONS-pings recorders and places recorded calls through a route group.

It exists so tests, demos and benchmarks can drive recorders the way CUCM does (route group
distribution, failover on OPTIONS ping and on refused INVITEs) without a CUCM cluster.
"""
