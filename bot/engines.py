"""The engines agentry can drive, in the order they are listed everywhere."""

ENGINES = ("codex", "claude", "opencode", "gemini", "aider", "command")
