"""Messages to consumers: mini-program subscribe messages (with consent) and official-account templates."""
