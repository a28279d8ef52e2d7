// The wire types that appear in PiglixClient's public API live in the
// PiglixWire module, which is not a product of this package. Re-exporting
// them lets a package that depends on the `PiglixClient` product name them
// (`DeliveryLevel`, `DeliveredRecord`, …) with a single `import PiglixClient`,
// as examples/swift does.
@_exported import enum PiglixWire.ContentCoding
@_exported import enum PiglixWire.ControlRecord
@_exported import struct PiglixWire.DeliveredMessage
@_exported import enum PiglixWire.DeliveredRecord
@_exported import enum PiglixTopics.DeliveryLevel
@_exported import struct PiglixWire.MessageHeader
@_exported import struct PiglixWire.PublishAck
@_exported import struct PiglixWire.PublishRecord
@_exported import enum PiglixWire.StreamFormat
