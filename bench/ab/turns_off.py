"""LOAD_HOOK for an A/B: no background turns (the order before the twelfth session's lat9)."""

import bot.background

bot.background.TURNS = False
