package config

// Store configures the per-message records (issue 6).
type Store struct {
}

func defaultStore() Store { return Store{} }

func (c *Config) validateStore() Errors { return nil }
