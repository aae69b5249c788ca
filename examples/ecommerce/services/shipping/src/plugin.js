// Shipping service: creates a shipment for each InventoryUpdated, picking the carrier by the configured rule, and emits ShipmentCreated.
import { byKey, handler } from '@weir/sdk';
import { event, parse, shortHash } from './events.js';

export default handler({
  // Keyed by order id: a redelivered InventoryUpdated within a week ships nothing twice.
  idempotency: byKey({ windowMs: 7 * 86_400_000 }),

  init(config) {
    config.rejectUnknown(['carriers']);
    return { carriers: (config.get('carriers') ?? 'parcelco').split(',') };
  },

  handle(msg, { carriers }) {
    const u = parse('InventoryUpdated', msg);
    // The hash makes carrier and tracking id deterministic per order, as in the Rust service.
    const tracking = shortHash(`ship:${u.order_id}`);
    const carrier = carriers[parseInt(tracking.slice(0, 2), 16) % carriers.length];
    // Field order as the Rust ShipmentCreated struct serialises.
    const shipment = { order_id: u.order_id, customer: u.customer, carrier, tracking: `TRK-${tracking}` };
    return [event('ShipmentCreated', shipment.order_id, shipment)];
  },
});
