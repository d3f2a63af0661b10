//! The gRPC codec of every generated service and client: prost's, except that a message that
//! does not decode is `InvalidArgument` with the stable code `invalid_argument` at the head of
//! its message, as every other Meridian error ("invalid_argument: the message does not decode as
//! protobuf: ..."). tonic's own codec answers `Internal`, which reads as a server bug when the
//! fault is the caller's bytes.

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Named in `build.rs` (`codec_path`); the generated code calls `MeridianCodec::default()`.
pub struct MeridianCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for MeridianCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for MeridianCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = MeridianDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        MeridianDecoder(self.0.decoder())
    }
}

/// prost's decoder with its decode error reported as `InvalidArgument`.
pub struct MeridianDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for MeridianDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|e| match e.code() {
            Code::Internal => Status::invalid_argument(format!(
                "invalid_argument: the message does not decode as protobuf: {}",
                e.message()
            )),
            _ => e,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
