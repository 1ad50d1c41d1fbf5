"""Invitations (邀请 / 老带新): invite codes, share links and QR codes, bindings, order attribution."""
