package member

import "time"

// SetWallClock makes t read its wall clock from f (which must be safe for concurrent use),
// so that tests can step it. Call it before Run.
func SetWallClock(t *Tracker, f func() time.Time) { t.wall = f }
