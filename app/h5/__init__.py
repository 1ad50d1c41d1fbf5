"""Followers' pages in WeChat's browser (server-rendered, zh-CN): wallet, timeline, red packets."""
