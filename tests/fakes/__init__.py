"""Local fakes of chat platforms: real HTTP servers on ephemeral ports."""
