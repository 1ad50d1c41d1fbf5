"""Official-account followers: the message server, follows attributed to parametric QR codes, replies."""
