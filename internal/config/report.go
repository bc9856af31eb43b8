package config

// Report configures aggregate report building and delivery (issue 7).
type Report struct {
}

func defaultReport() Report { return Report{} }

func (c *Config) validateReport() Errors { return nil }
