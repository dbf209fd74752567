// Package envname names the environment variables that point Google clients
// at the local emulator: the emulator prints them (emulator.Env) and the
// product reads them (internal/gcp, functions, iapctl). It imports nothing,
// so the emulator and the product can both link it without linking each
// other.
package envname

const (
	// EmulatorHost points every iapguard client at the emulator (host:port).
	EmulatorHost = "IAPGUARD_EMULATOR_HOST"
	// PubSubEmulatorHost is the variable the Pub/Sub library honours itself
	// (host:port); the function and iapctl default it to EmulatorHost.
	PubSubEmulatorHost = "PUBSUB_EMULATOR_HOST"
)
