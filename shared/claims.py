"""Claiming what is due from a Redis sorted set scored by due time, for several replicas at once.

One atomic Lua call returns the members due by `now` (at most `limit`) and moves each one's score to the lease
deadline, which hides it from the other replicas until then; a claimer that dies simply lets the lease lapse,
and the member is due again. Used by the deletion schedule (shared/deletion.py) and the webhook outbox
(shared/webhooks.py).
"""

from __future__ import annotations

# KEYS[1] the sorted set; ARGV[1] now; ARGV[2] limit; ARGV[3] lease deadline. Returns the claimed members.
CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], member) end
return due
"""
