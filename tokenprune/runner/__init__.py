"""The sweep runner: YAML grid -> validated cells -> results on disk (resumable)."""
