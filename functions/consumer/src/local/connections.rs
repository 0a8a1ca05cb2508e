//! The event source's broker connections. Each mapping holds one channel, and RabbitMQ caps the
//! channels of one connection (`channel_max`, 2047 by default), so the mappings are spread over
//! as many connections as they need, none carrying more than `CONSUMER_CHANNELS_PER_CONNECTION`.
//! Each connection is a `shared::broker::Broker`: it connects on first use and again after it
//! is lost, as the process's own does.

use std::sync::Arc;

use shared::broker::Broker;

pub struct Connections {
    url: String,
    name: String,
    per_connection: usize,
    slots: Vec<Slot>,
}

struct Slot {
    broker: Arc<Broker>,
    mappings: usize,
}

/// A mapping's place on one connection, given back with [`Connections::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seat(usize);

impl Connections {
    /// `name` prefixes each connection's name, as the broker shows it (`<name>.<n>`).
    pub fn new(url: &str, name: &str, per_connection: usize) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            per_connection: per_connection.max(1),
            slots: Vec::new(),
        }
    }

    /// A seat on the first connection with room, or on a new one.
    pub fn take(&mut self) -> (Seat, Arc<Broker>) {
        let i = match self
            .slots
            .iter()
            .position(|s| s.mappings < self.per_connection)
        {
            Some(i) => i,
            None => {
                let name = format!("{}.{}", self.name, self.slots.len());
                self.slots.push(Slot {
                    broker: Broker::new(self.url.clone(), name),
                    mappings: 0,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.mappings += 1;
        (Seat(i), slot.broker.clone())
    }

    /// Frees a seat once its mapping has stopped (its channel closed). A connection left with
    /// no mapping is closed; the next seat on it connects again.
    pub async fn release(&mut self, seat: Seat) {
        let slot = &mut self.slots[seat.0];
        slot.mappings -= 1;
        if slot.mappings == 0 {
            slot.broker.close().await;
        }
    }

    /// Connections holding mappings now.
    pub fn in_use(&self) -> usize {
        self.slots.iter().filter(|s| s.mappings > 0).count()
    }

    /// Closes every connection (shutdown, after the mappings stopped).
    pub async fn close(&mut self) {
        for slot in &self.slots {
            slot.broker.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seats_fill_a_connection_before_the_next_and_reuse_freed_ones() {
        // Nothing connects: a Broker connects on first use only.
        let mut c = Connections::new("amqp://127.0.0.1:1/%2f", "test", 2);
        let seats: Vec<Seat> = (0..5).map(|_| c.take().0).collect();
        assert_eq!(
            seats,
            [Seat(0), Seat(0), Seat(1), Seat(1), Seat(2)],
            "at most 2 per connection"
        );
        assert_eq!(c.in_use(), 3);
        c.release(Seat(1)).await;
        assert_eq!(
            c.take().0,
            Seat(1),
            "a freed seat is taken before a new connection"
        );
        c.release(Seat(2)).await;
        assert_eq!(c.in_use(), 2, "a connection without mappings is not in use");
        assert_eq!(c.take().0, Seat(2));
    }
}
