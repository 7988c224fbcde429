"""The Slack adapter: Bolt's AsyncApp translating Slack payloads to the neutral core and back."""
