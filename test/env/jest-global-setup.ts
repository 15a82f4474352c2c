// Replaced by the test-environment implementation.
export default function globalSetup(): void {}
