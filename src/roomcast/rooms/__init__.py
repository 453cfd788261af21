"""Rooms apart from any protocol: the model (``model``), the manager and its policy (``manager``: joins,
kicks and revocation, moderation, data rules, quotas), access tokens and grants (``tokens``) and the resume
registry (``resume``). Every adapter (JSON signaling, WHIP, SIP, LiveKit's protocol) uses the same policy.
It imports nothing of ours; time is an argument."""
