"""Everything Hongli uses to speak to WeChat: signing, verification, XML, and thin API clients.

Nothing here imports ``app``; importing this package has no side effects.
"""
