//! The monitor's memory footprint: the future its handler makes, held once per integration.

use std::time::Duration;

use uuid::Uuid;

use super::*;
use crate::health::settings::HealthSettings;
use crate::health::timers::Timers;
use crate::health::writer::{ResultWriter, WriterOptions};

/// An actor that only lends its address.
struct Sink;

impl Actor for Sink {
    type Msg = MonitorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<MonitorMsg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// ractor allocates each actor's processing loop once, with room for the largest future
/// its handler makes, and keeps it for the actor's life: with a monitor per integration,
/// every byte here is a byte per integration. Rare, large paths are boxed.
#[tokio::test]
async fn the_handler_future_is_small() {
    let (writer, _task) = ResultWriter::spawn(
        crate::store::testing::store().await,
        WriterOptions::default(),
    );
    let ctx = Arc::new(EngineContext {
        schedule: HealthSettings::default().schedule().unwrap(),
        writer,
        clock: Default::default(),
        timers: Timers::spawn(),
        egress: Default::default(),
    });
    let spec = Arc::new(MonitorSpec::new(
        Uuid::now_v7(),
        "t".into(),
        "inmemory".into(),
        1,
        Duration::from_secs(60),
        true,
        Err("none".into()),
        Status::Unknown,
    ));
    let (myself, _) = Actor::spawn(None, Sink, ()).await.unwrap();
    let mut state = MonitorState::new(spec, ctx);
    let size = {
        let handling = IntegrationMonitor.handle(myself.clone(), MonitorMsg::Tick(0), &mut state);
        std::mem::size_of_val(&handling)
    };
    // 120 bytes in a release build; 1,120 with the check's result handled unboxed.
    assert!(size <= 512, "the handler's future takes {size} bytes");
    myself.stop(None);
}
