"""notify_svc: push notifications for users who are not connected (see docs/notify.md)."""
