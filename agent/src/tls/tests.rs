//! Tests of the TLS stream: byte vectors built here, and real handshake records extracted by hand
//! (`tshark -x`, TDS headers stripped) from the public captures named at each constant.

use super::*;

// ---------------------------------------------------------------------------------------------
// Real records.
//
// 0x5CE-beats__mssql_login.pcap (SQL Server 2022, TLS inside TDS PRELOGIN packets): frame 15
// (client, the TLS part of a 0x12 packet), frame 17 (server flight), frame 21 (client second flight),
// frame 23 (server NewSessionTicket, ChangeCipherSpec, Finished).
// zeek__tls__dhe.pcap (plain TLS 1.2, TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA): frame 4 (ClientHello);
// from the server's stream of frames 6-8 the ServerHello, ServerKeyExchange and ServerHelloDone
// records (the Certificate record between them left out); frame 12 (NewSessionTicket,
// ChangeCipherSpec, Finished); frame 17 (encrypted alert).
// nDPI__tls_alert.pcap: frame 4 (ClientHello, TLS 1.0 with TLS_FALLBACK_SCSV), frame 6 (fatal
// protocol_version alert).
const MSSQL_CLIENT_HELLO: &str = concat!(
    "16030101160100011203031247f37f1ac8ed659f82a9d66838399dc99b95663fbc080ab8146a48149182a4000082c030",
    "c02cc028c024c014c00a00a3009f006b006a0039003800880087c032c02ec02ac026c00fc005009d003d00350084c02f",
    "c02bc027c023c013c00900a2009e0067004000330032009a009900450044c031c02dc029c025c00ec004009c003c002f",
    "00960041c011c007c00cc00200050004c012c00800160013c00dc003000a00ff010000670000000e000c0000096c6f63",
    "616c686f7374000b000403000102000a001c001a00170019001c001b0018001a0016000e000d000b000c0009000a0023",
    "0000000d0020001e060106020603050105020503040104020403030103020303020102020203000f000101",
);
const MSSQL_SERVER_FLIGHT: &str = concat!(
    "160303003d02000039030304178e8e4bf7740280b310fbb78bad7882003c2dae91b871c60dc394e084ea5400c02f0000",
    "11ff01000100000b0004030001020023000016030303d10b0003cd0003ca0003c7308203c33082022b0208789a853357",
    "8c528c300d06092a864886f70d01010b050030233121301f06035504030c1853534c5f53656c665f5369676e65645f46",
    "616c6c6261636b3020170d3232303732363135323831335a180f32303532303732363135323831335a30233121301f06",
    "035504030c1853534c5f53656c665f5369676e65645f46616c6c6261636b308201a2300d06092a864886f70d01010105",
    "000382018f003082018a0282018100dc7a514c1e79c82776e5fdd43dc57a9110303c6b7c0b844d1cb190016f99a8133f",
    "8dd0c040a46f6e567ae01a8a609f10ba25ccc957bf14b39b7bf93ccba274b1a982c1103e0cf7d679d3b95b1c0e2f8796",
    "95e7607b6b547e5784169ad11a036137e0eab45fa70cdd4532e57a735fff6c54ca7b0e6bee5efd89b87144d265c2eafd",
    "914d9ba24654b4191f8a504504d370a3486bbf282522d57fb32c2a8df2154563a23f5ceb4e999904df546962de7cdce8",
    "c0d498300a0f190fc88332c23c1e9a421d810678c9186950ad7caae2fcdb1ac9af3ab3e8a2c1092fb5f659277ea3d8ee",
    "d11d64f77e89a8f5d004131ab4858fd7862e46c56c7f6c1d85ec44e41be49bf08461b2ce400ef4dfd5e5c15140863c37",
    "3f40109d5314f6c10c3a5d31ee69879b68356716c244ec2f84e13bd2c7b45604980ac16ba2c0db8b326cf7691013563a",
    "0e6a294fb24c48cbd6097495b75c9edd15785db0babf13f4b332ea0cdfb65937c5762499d3daadfd59ec3e52014af6c0",
    "39e6374cf9a978d085a5474025b5d10203010001300d06092a864886f70d01010b05000382018100566bcb284d241d90",
    "625d1170ab421a6ef93ceac111d1c9c12b40f695c770e3296ad3c7c4002880d0b1cdc1b2a619999a2978042e3fc8ec12",
    "1e907ad9ab98e5cfe34037ea352c1666b77dffb2249d9507168fd0e901d5269fa720bc59be75ff1f3d397b791b2984b2",
    "271b51cb44f8f5e5f3c0ad35d8fedc6dbd85e5435d216d1b1ea416102d8e977bdde6a27abac46bc754dd5eafddcfb2c3",
    "f5aad4e354335d37770234784fd19a101fb0ab8f5ea8c5fc3ef4ff294c54ea4ee3ece753fcebfa8755e9ff5cf635784b",
    "9e2df274f1606cbf6916fb45138b6c9eb1d4df31ad91fff62cb0347fbf609e79912ed8b3adddfbe9e91f1ff77725808f",
    "1622c425e3845ba6f2a3df45a583b63460aa93cffaeafe388d4ca4eb63e46a4ddd8f92a8a0c95f5cbd28343fe2008e4f",
    "52451c6619ac708625a4367d96a227cdead84a7cb4d9099bf57398bbdccc51f12b8198c4fcbcdee45b49fd297e86c236",
    "fc82dbf6d18e59396874d4b928c072b6bdc9a96b9540aa77c06ae6ae5173b314ac0af41b8aeb2d9c16030301cd0c0001",
    "c90300174104d15bc48a6cb4483eae40a8af3ef085497fa02bd7fd97580d386d6a3e05dd9122f491235e0a76c2b12e5b",
    "8c5c992f67d7bd27f1ad3ed892e4494b4dadf2ba82f9040101801ed0f4d7a8283e1df62a95d50b6be6e3aefcbe6b9460",
    "195fd006f1b91da31ba4aec2a4fae5e58bc650d4acc22391fdd5ad63ef41d6884ce0338f78d17a7f620b90df6bd9e793",
    "35f64b56994b05220ea422dd288a9a57b53609b756888e0ab4b56d00f3d3ca2d16e93feddcca564dc6e821be86c6e17c",
    "f8043395437958e09a21fabfa83e361acbe188ee365e79a431b5eae461053b7f62905c300a1093c46c7cb0b843329731",
    "a8e23caadf1cd9107ab5c431729b2779d780afd5a963e1e61c43e3dd75455f32adf4ec2e9b5306a0921eb7cc3febaf35",
    "af8793fe7408cf01178f35b11c7637720ebb86a51af8d1fea1b92a8cd6bc4785492b07b88d7df3b29253cb22f357dc65",
    "960cc971fcf2f352b4315030bc118d36726b8953c58fa275630e877412c858a547c1c4deba191f7c645fb6b1bb97f9af",
    "3785cdbca4c1cbdd95fc86b5090ba5fc369ed90d931d427ae409e3012f64c447f87668bb0939c12ae47348c04c1335ce",
    "b6e457a6a6cbba978478361f5824953fe26b4ba6deb014e6d29316030300040e000000",
);
const MSSQL_CLIENT_FINISH: &str = concat!(
    "16030300461000004241045ebb1e2947a1fe8228dc63067a324a371ae4528c135928d7ac9eb5f723dbe265ada4a0cefa",
    "0dac0111bae516c117a04d2a68891ca24a3271931c97b862b5c72c14030300010116030300281cf37b8827840095bdf1",
    "6805c2ecb349b417ad0188a1e134845b7cb2977e5eb8a4b4e1a534bfc243",
);
const MSSQL_SERVER_FINISH: &str = concat!(
    "16030300aa040000a600001c2000a0df4caa4981c61b6cb335ec92dfd79aa8a5da2e473b34d875963b77ab45baafe474",
    "b6e5cca5a179217aaeddf02f34f9be1b16165fdebc11ea490fd9cb1524925ab838956c9e06b34288393e55dc28894f35",
    "d53d4d810a96d5f5c15ff03928acf8148a53eba845fe804fd81784b0628f341fd213efba22d81a34d82f1c3eaa9c8594",
    "a9ba290559afb2d29e02932a545a6ecc82bac98e0dca68c1ab9b0afbb1e2bc1403030001011603030028090b6873f783",
    "3e2192f7a52b5eb60400863a8f1a8450b5c58123fdd019daff5a4c284a92abfe8b71",
);
const DHE_CLIENT_HELLO: &str = concat!(
    "160301005f0100005b03035eda80951f7f8ae4d8dd45f31ed2e158f5f9ee676b7cb2c92585d8a3e1c2da7e0000040088",
    "00ff020100002d00230000000d0020001e06010602060305010502050304010402040303010302030302010202020300",
    "0f000101",
);
const DHE_SERVER_HELLO: &str = concat!(
    "160303003a020000360303535c4db35c3660849d1ba4081e9c5863f11c64233c045d58380ea393bdca53220000880000",
    "0eff0100010000230000000f000101",
);
const DHE_SERVER_KEY_EXCHANGE: &str = concat!(
    "160303020f0c00020b0080bbbc2dcad84674907c43fcf580e9cfdbd958a3f568b42d4b08eed4eb0fb3504c6c030276e7",
    "10800c5ccbbaa8922614c5beeca565a5fdf1d287a2bc049be6778060e91a92a757e3048f68b076f7d36cc8f29ba5df81",
    "dc2ca725ece66270cc9a5035d8ceceef9ea0274a63ab1e58fafd4988d0f65d146757da071df045cfe16b9b0001020080",
    "af5e4cde6c7ac4ad3f62f9df82e6a378a1c80fccf26abcbd13120339707baae172c0381abde73c3d607c14706bb8ab4d",
    "09dd39c5961ea86114c37f6b803554925a3e4c64c54ed1ba171e52f97fa2df2ef7e52725c62635e4c3ab625a018bfa75",
    "b266446f24b8e0c13dcc258db35b52e8ed5add68ca54de905395304cf3e1eeac0601010018fd31815d4c5316d23bddb6",
    "1ada198272ffa76ab0a4f7505b2a232150bd79874a9e5aabd7e39aef8cccdd2eba9cfcef6cc77842c7b359899b976f93",
    "0e671d9308c3a07eeb6eaf1411a4c91a3523e4a8a4ccf523df2b70d56da5173e862643ad894495f14a94bda7115cedda",
    "87d520e524f917197dec625ffa1283d156e39f2daa49424a42aba2e0d0e43ebd537f348db770fe6c901a17432c7dd1a9",
    "146a2039c383f293cab5b04cb653332454883396863dd419b63745cc65bfc905c06a5d4283f5ff33a1d59584610293a1",
    "b08da9a6884c8e67675568e2c357b3d040350694c8b1c74c4be16e76eafeb8efe69dc501154fd36347d04ffc0c6e9a56",
    "46a1902a",
);
const DHE_SERVER_HELLO_DONE: &str = "16030300040e000000";
const DHE_SERVER_FINISH: &str = concat!(
    "16030300aa040000a60000012c00a0cc13042d558ae46ef9fbfa99acd6d7f9aa5b6c37085b3cfe411a1f6a186bcdf32a",
    "7d2e34c2db4a1da547f59dd7b9ebbc7b42f53d21ad5bd79cd53ada2c1920a1b450dda0ee8bca7021cf3198bc9d01b0fa",
    "40714fa94b856cb696332776dc795d90d5598e937e8ba0ecafc97970777637d8ee860816373817d34b0dff49f3a40847",
    "325e97ae246c0d99ff0a7e4350878b1424f8b2cd1988e63139b91dccc4136c14030300010116030300407a0d4356e848",
    "48a8056694aa47d302232b963f09f97fe14b775272f14c16c9ef78d3ddca10fec900b0f28612d34eff16afbd04fc162b",
    "802888da8bd67dc4c292",
);
const DHE_SERVER_ENCRYPTED_ALERT: &str = concat!(
    "1503030030043621d6755c43cfe528a79330da49a21c4d3e80650f5a77216b2125ac7997cb20a3b9b45182f81f640861",
    "3c9fdef679",
);
const NDPI_CLIENT_HELLO: &str = concat!(
    "16030100c2010000be030152db35f3eaa1188bf1e193fccf333e5873f435bbdc1c481817853f5476256a3a000012002f",
    "003300350039c009c00ac013c014560001000083ff010001000000001d001b0000187777772e676f6f676c652d616e61",
    "6c79746963732e636f6d00170000000500050100000000337400000012000000100030002e0268320568322d31360568",
    "322d31350568322d313408737064792f332e3106737064792f3308687474702f312e31000b00020100000a000a000800",
    "1d001700180019",
);
const NDPI_ALERT: &str = "15030100020246";

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn limits() -> Limits {
    Limits::default()
}

/// Feeds `chunks` one after the other; returns the events.
fn run_chunks(side: Side, limits: &Limits, chunks: &[&[u8]]) -> Vec<TlsEvent> {
    let mut s = TlsStream::new(side, limits);
    let mut events = Vec::new();
    for c in chunks {
        s.feed(c, &mut |e| events.push(e));
    }
    events
}

fn run(side: Side, bytes: &[u8]) -> Vec<TlsEvent> {
    run_chunks(side, &limits(), &[bytes])
}

/// Feeds `bytes` in pieces of `size` (and checks the buffer cap after every piece).
fn run_sized(side: Side, limits: &Limits, bytes: &[u8], size: usize) -> Vec<TlsEvent> {
    let mut s = TlsStream::new(side, limits);
    let mut events = Vec::new();
    for c in bytes.chunks(size) {
        s.feed(c, &mut |e| events.push(e));
        assert!(s.buffered_bytes() <= limits.max_tls_handshake_message);
    }
    events
}

/// The events of `bytes`, checked to be the same whatever the chunking (all at once, byte at a
/// time, and a few sizes in between).
fn events_any_chunking(side: Side, bytes: &[u8]) -> Vec<TlsEvent> {
    let l = limits();
    let whole = run(side, bytes);
    for size in [1, 2, 3, 4, 5, 7, 13, 64, 1000] {
        assert_eq!(run_sized(side, &l, bytes, size), whole, "chunks of {size}");
    }
    whole
}

fn record(ty: u8, body: &[u8]) -> Vec<u8> {
    record_v(ty, 0x0303, body)
}

fn record_v(ty: u8, version: u16, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn handshake(ty: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut v = vec![ty, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    v.extend_from_slice(body);
    v
}

fn u16s(list: &[u16]) -> Vec<u8> {
    list.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A 2-byte-length-prefixed list of u16.
fn u16_list(list: &[u16]) -> Vec<u8> {
    let mut v = ((list.len() * 2) as u16).to_be_bytes().to_vec();
    v.extend(u16s(list));
    v
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ty.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn ext_supported_versions_client(versions: &[u16]) -> Vec<u8> {
    let mut d = vec![(versions.len() * 2) as u8];
    d.extend(u16s(versions));
    ext(43, &d)
}

fn ext_sni(host: &[u8]) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend_from_slice(&(host.len() as u16).to_be_bytes());
    entry.extend_from_slice(host);
    let mut d = (entry.len() as u16).to_be_bytes().to_vec();
    d.extend(entry);
    ext(0, &d)
}

fn ext_alpn(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(n.len() as u8);
        list.extend_from_slice(n);
    }
    let mut d = (list.len() as u16).to_be_bytes().to_vec();
    d.extend(list);
    ext(16, &d)
}

fn client_hello(legacy: u16, suites: &[u16], exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = legacy.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x11; 32]);
    b.push(32);
    b.extend_from_slice(&[0x22; 32]);
    b.extend(u16_list(suites));
    b.extend_from_slice(&[1, 0]);
    let exts = exts.concat();
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend(exts);
    handshake(1, &b)
}

fn server_hello(random: [u8; 32], suite: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = 0x0303u16.to_be_bytes().to_vec();
    b.extend_from_slice(&random);
    b.push(32);
    b.extend_from_slice(&[0x33; 32]);
    b.extend_from_slice(&suite.to_be_bytes());
    b.push(0);
    let exts = exts.concat();
    if !exts.is_empty() {
        b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        b.extend(exts);
    }
    handshake(2, &b)
}

fn tls13_server_hello(group: u16) -> Vec<u8> {
    let mut ks = group.to_be_bytes().to_vec();
    ks.extend_from_slice(&32u16.to_be_bytes());
    ks.extend_from_slice(&[0x44; 32]);
    server_hello([0x55; 32], 0x1301, &[ext(43, &[0x03, 0x04]), ext(51, &ks)])
}

fn hello_retry_request(group: u16) -> Vec<u8> {
    server_hello(
        hello::HRR_RANDOM,
        0x1302,
        &[ext(43, &[0x03, 0x04]), ext(51, &group.to_be_bytes())],
    )
}

fn tls13_client_hello() -> Vec<u8> {
    client_hello(
        0x0303,
        &[0x1a1a, 0x1301, 0x1302, 0xc02f, 0x00ff],
        &[
            ext(0x0a0a, &[]),
            ext_sni(b"sql.example.com"),
            ext_supported_versions_client(&[0x2a2a, 0x0304, 0x0303]),
            ext(10, &u16_list(&[0x0a0a, 0x001d, 0x0017])),
            ext(13, &u16_list(&[0x0403, 0x0804, 0x0401])),
            ext_alpn(&[b"tds/8.0"]),
            ext(51, &[0, 0]),
            ext(0xfafa, &[0]),
        ],
    )
}

fn sh_done() -> Vec<u8> {
    handshake(14, &[])
}

fn alert(level: u8, description: u8) -> TlsEvent {
    TlsEvent::Alert {
        level: Some(level),
        description: Some(description),
    }
}

// ---------------------------------------------------------------------------------------------
// Free functions.

#[test]
fn suite_names_are_iana() {
    assert_eq!(suite_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(suite_name(0x1301), "TLS_AES_128_GCM_SHA256");
    assert_eq!(suite_name(0x1303), "TLS_CHACHA20_POLY1305_SHA256");
    assert_eq!(suite_name(0x0088), "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA");
    assert_eq!(suite_name(0x002f), "TLS_RSA_WITH_AES_128_CBC_SHA");
    assert_eq!(suite_name(0xeeee), "0xeeee");
    assert_eq!(suite_name(0x0a0a), "0x0a0a");
}

#[test]
fn key_exchange_of_suites() {
    assert_eq!(kx_of_suite(0x002f), KeyExchange::Rsa);
    assert_eq!(kx_of_suite(0x0003), KeyExchange::Rsa); // TLS_RSA_EXPORT_WITH_RC4_40_MD5
    assert_eq!(kx_of_suite(0x0033), KeyExchange::Dhe);
    assert_eq!(kx_of_suite(0x009e), KeyExchange::Dhe);
    assert_eq!(kx_of_suite(0x0013), KeyExchange::Dhe); // TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA
    assert_eq!(kx_of_suite(0xc02f), KeyExchange::Ecdhe);
    assert_eq!(kx_of_suite(0xc02c), KeyExchange::Ecdhe);
    for other in [
        0x1301, 0x0090, 0x0092, 0xc035, 0x0030, 0xc004, 0x0034, 0x00ff, 0x008c, 0xeeee,
    ] {
        assert_eq!(kx_of_suite(other), KeyExchange::Other, "{other:#06x}");
    }
    assert_eq!(kx_of_group(0x0100), KeyExchange::Dhe);
    assert_eq!(kx_of_group(0x001d), KeyExchange::Ecdhe);
}

#[test]
fn alert_names() {
    let expected = [
        (0, "close_notify"),
        (10, "unexpected_message"),
        (20, "bad_record_mac"),
        (21, "decryption_failed"),
        (22, "record_overflow"),
        (30, "decompression_failure"),
        (40, "handshake_failure"),
        (41, "no_certificate"),
        (42, "bad_certificate"),
        (43, "unsupported_certificate"),
        (44, "certificate_revoked"),
        (45, "certificate_expired"),
        (46, "certificate_unknown"),
        (47, "illegal_parameter"),
        (48, "unknown_ca"),
        (49, "access_denied"),
        (50, "decode_error"),
        (51, "decrypt_error"),
        (60, "export_restriction"),
        (70, "protocol_version"),
        (71, "insufficient_security"),
        (80, "internal_error"),
        (86, "inappropriate_fallback"),
        (90, "user_canceled"),
        (100, "no_renegotiation"),
        (109, "missing_extension"),
        (110, "unsupported_extension"),
        (111, "certificate_unobtainable"),
        (112, "unrecognized_name"),
        (113, "bad_certificate_status_response"),
        (114, "bad_certificate_hash_value"),
        (115, "unknown_psk_identity"),
        (116, "certificate_required"),
        (120, "no_application_protocol"),
    ];
    for (d, name) in expected {
        assert_eq!(alert_name(d), name);
    }
    assert_eq!(alert_name(1), "unknown_1");
    assert_eq!(alert_name(255), "unknown_255");
}

#[test]
fn grease_and_version_names() {
    assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x3a3a));
    assert!(!is_grease(0x0a1a) && !is_grease(0x0303) && !is_grease(0x1a0a));
    assert_eq!(version_name(TLS12), "TLSv1.2");
    assert_eq!(version_name(0x7f1c), "0x7f1c");
}

// ---------------------------------------------------------------------------------------------
// Real handshakes.

#[test]
fn mssql_client_hello() {
    let ev = events_any_chunking(Side::Client, &hex(MSSQL_CLIENT_HELLO));
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(ch.legacy_version, TLS12);
    // No supported_versions: TLS 1.2 is both the highest and the lowest offer.
    assert_eq!((ch.max_version, ch.min_version), (TLS12, TLS12));
    // 65 suites on the wire, the last one TLS_EMPTY_RENEGOTIATION_INFO_SCSV.
    assert_eq!(ch.suites.len(), 64);
    assert_eq!(ch.suites.first(), Some(&0xc030));
    assert_eq!(ch.suites.last(), Some(&0x000a));
    assert!(ch.suites.contains(&0xc02f));
    assert!(!ch.suites.contains(&0x00ff));
    assert!(ch.dhe_offered);
    assert_eq!(ch.sni.as_deref(), Some("localhost"));
    assert!(ch.alpn.is_empty());
    assert_eq!(ch.groups.len(), 13);
    assert_eq!(ch.groups[..3], [0x0017, 0x0019, 0x001c]);
    // Computed from the same bytes by an independent script following FoxIO's JA4.md.
    assert_eq!(ch.ja4, "t12d650600_77b304177063_a1e935682795");
}

#[test]
fn mssql_server_flight() {
    let mut bytes = hex(MSSQL_SERVER_FLIGHT);
    bytes.extend(hex(MSSQL_SERVER_FINISH));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(ev.len(), 7, "{ev:?}");
    assert_eq!(
        ev[0],
        TlsEvent::ServerHello(ServerHello {
            version: TLS12,
            suite: 0xc02f,
            hello_retry: false,
            key_share_group: None
        })
    );
    assert_eq!(suite_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    let TlsEvent::Certificate(c) = &ev[1] else {
        panic!("{:?}", ev[1])
    };
    assert_eq!(c.subject, "CN=SSL_Self_Signed_Fallback");
    assert_eq!(c.issuer, "CN=SSL_Self_Signed_Fallback");
    assert!(c.self_signed);
    assert_eq!(c.signature_algorithm, "sha256WithRSAEncryption");
    assert_eq!(c.signature_hash, Some("sha256"));
    assert_eq!((c.key_type.as_str(), c.key_bits), ("RSA", Some(3072)));
    assert_eq!(c.not_before, 1_658_849_293); // 2022-07-26T15:28:13Z
    assert_eq!(c.not_after, 2_605_620_493); // 2052-07-26T15:28:13Z
    assert_eq!(c.dns_names, vec!["SSL_Self_Signed_Fallback".to_string()]);
    assert_eq!(c.server_auth_eku, None);
    assert_eq!(
        ev[2],
        TlsEvent::ServerKeyExchange {
            dh_bits: None,
            curve: Some(0x0017)
        }
    );
    assert_eq!(ev[3], TlsEvent::ServerHelloDone);
    assert_eq!(ev[4], TlsEvent::NewSessionTicket);
    assert_eq!(ev[5], TlsEvent::ChangeCipherSpec);
    assert_eq!(ev[6], TlsEvent::EncryptedHandshake);
}

#[test]
fn mssql_client_second_flight() {
    let mut bytes = hex(MSSQL_CLIENT_HELLO);
    bytes.extend(hex(MSSQL_CLIENT_FINISH));
    bytes.extend(record(23, &[0x5a; 233]));
    let ev = events_any_chunking(Side::Client, &bytes);
    assert!(matches!(ev[0], TlsEvent::ClientHello(_)));
    assert_eq!(
        ev[1..],
        [
            TlsEvent::ClientKeyExchange,
            TlsEvent::ChangeCipherSpec,
            TlsEvent::EncryptedHandshake,
            TlsEvent::ApplicationData { len: 233 }
        ]
    );
}

#[test]
fn dhe_server_key_exchange_and_encrypted_alert() {
    let mut bytes = hex(DHE_SERVER_HELLO);
    bytes.extend(hex(DHE_SERVER_KEY_EXCHANGE));
    bytes.extend(hex(DHE_SERVER_HELLO_DONE));
    bytes.extend(hex(DHE_SERVER_FINISH));
    bytes.extend(hex(DHE_SERVER_ENCRYPTED_ALERT));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(
        ev,
        [
            TlsEvent::ServerHello(ServerHello {
                version: TLS12,
                suite: 0x0088,
                hello_retry: false,
                key_share_group: None
            }),
            TlsEvent::ServerKeyExchange {
                dh_bits: Some(1024),
                curve: None
            },
            TlsEvent::ServerHelloDone,
            TlsEvent::NewSessionTicket,
            TlsEvent::ChangeCipherSpec,
            TlsEvent::EncryptedHandshake,
            TlsEvent::Alert {
                level: None,
                description: None
            },
        ]
    );
    assert_eq!(kx_of_suite(0x0088), KeyExchange::Dhe);
}

#[test]
fn server_key_exchange_without_a_server_hello_says_nothing() {
    let ev = run(Side::Server, &hex(DHE_SERVER_KEY_EXCHANGE));
    assert_eq!(
        ev,
        [TlsEvent::ServerKeyExchange {
            dh_bits: None,
            curve: None
        }]
    );
}

#[test]
fn dhe_client_hello() {
    let ev = events_any_chunking(Side::Client, &hex(DHE_CLIENT_HELLO));
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(ch.suites, [0x0088]);
    assert!(ch.dhe_offered);
    assert_eq!(ch.sni, None);
    assert_eq!(ch.ja4, "t12i020300_ea1f27bcdcc2_15cf763851c4");
}

#[test]
fn ndpi_fallback_client_hello_and_protocol_version_alert() {
    let ev = events_any_chunking(Side::Client, &hex(NDPI_CLIENT_HELLO));
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (ch.legacy_version, ch.max_version, ch.min_version),
        (TLS10, TLS10, TLS10)
    );
    // TLS_FALLBACK_SCSV (0x5600) removed.
    assert_eq!(
        ch.suites,
        [0x002f, 0x0033, 0x0035, 0x0039, 0xc009, 0xc00a, 0xc013, 0xc014]
    );
    assert!(ch.dhe_offered);
    assert_eq!(ch.sni.as_deref(), Some("www.google-analytics.com"));
    assert_eq!(
        ch.alpn,
        ["h2", "h2-16", "h2-15", "h2-14", "spdy/3.1", "spdy/3", "http/1.1"]
    );
    assert_eq!(ch.groups, [0x001d, 0x0017, 0x0018, 0x0019]);
    // JA4 counts the SCSV: 9 suites.
    assert_eq!(ch.ja4, "t10d0909h2_61c4dbd01224_cc731f12afbb");

    let ev = events_any_chunking(Side::Server, &hex(NDPI_ALERT));
    assert_eq!(ev, [alert(2, 70)]);
    assert_eq!(alert_name(70), "protocol_version");
}

// ---------------------------------------------------------------------------------------------
// Built handshakes.

#[test]
fn tls13_client_hello_with_grease() {
    let ev = events_any_chunking(Side::Client, &record_v(22, 0x0301, &tls13_client_hello()));
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(ch.legacy_version, TLS12);
    assert_eq!((ch.max_version, ch.min_version), (TLS13, TLS12));
    assert_eq!(ch.suites, [0x1301, 0x1302, 0xc02f]);
    assert!(!ch.dhe_offered);
    assert_eq!(ch.sni.as_deref(), Some("sql.example.com"));
    assert_eq!(ch.alpn, ["tds/8.0"]);
    assert_eq!(ch.groups, [0x001d, 0x0017]);
    let expected = ja4::ja4(&ja4::Ja4Input {
        version: TLS13,
        suites: &[0x1301, 0x1302, 0xc02f, 0x00ff],
        extensions: &[0x0000, 0x002b, 0x000a, 0x000d, 0x0010, 0x0033],
        signature_algorithms: &[0x0403, 0x0804, 0x0401],
        first_alpn: Some(b"tds/8.0"),
    });
    assert_eq!(ch.ja4, expected);
    assert!(ch.ja4.starts_with("t13d0406t0_"), "{}", ch.ja4);
}

#[test]
fn supported_versions_of_grease_only_falls_back_to_legacy() {
    let ch = client_hello(
        0x0302,
        &[0x002f],
        &[ext_supported_versions_client(&[0x7a7a])],
    );
    let ev = run(Side::Client, &record(22, &ch));
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!((ch.max_version, ch.min_version), (TLS11, TLS11));
    assert!(ch.ja4.starts_with("t11i0101"), "{}", ch.ja4);
}

#[test]
fn client_hello_oddities_are_tolerated() {
    // Non-printable SNI and ALPN names are not kept; a truncated last extension is ignored.
    let mut ch = client_hello(
        0x0303,
        &[0x0033],
        &[ext_sni(b"bad\x01host"), ext_alpn(&[b"\xff\xfe", b"h2"])],
    );
    // Append a broken extension by growing the extension block length by 6 and adding 6 bytes.
    let ext_len_at = 4 + 2 + 32 + 1 + 32 + 4 + 2;
    let old = u16::from_be_bytes([ch[ext_len_at], ch[ext_len_at + 1]]);
    ch[ext_len_at..ext_len_at + 2].copy_from_slice(&(old + 6).to_be_bytes());
    ch.extend_from_slice(&[0x00, 0x17, 0x00, 0x09, 0xaa, 0xbb]);
    let len = (ch.len() - 4) as u32;
    ch[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let ev = run(Side::Client, &record(22, &ch));
    let [TlsEvent::ClientHello(h)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(h.sni, None);
    assert_eq!(h.alpn, ["h2"]);
    assert!(h.dhe_offered);
    // SNI present (d), 1 suite, 2 whole extensions; ALPN first value 0xff 0xfe → hex rule "fe".
    assert!(h.ja4.starts_with("t12d0102fe_"), "{}", h.ja4);
}

#[test]
fn tls13_server_hello_then_everything_is_encrypted() {
    let mut bytes = record(22, &tls13_server_hello(0x001d));
    bytes.extend(record(20, &[1]));
    bytes.extend(record(23, &[0x77; 90]));
    // A handshake record after a TLS 1.3 ServerHello cannot be read.
    bytes.extend(record(22, &sh_done()));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(
        ev,
        [
            TlsEvent::ServerHello(ServerHello {
                version: TLS13,
                suite: 0x1301,
                hello_retry: false,
                key_share_group: Some(0x001d)
            }),
            TlsEvent::ChangeCipherSpec,
            TlsEvent::ApplicationData { len: 90 },
            TlsEvent::EncryptedHandshake,
        ]
    );
}

#[test]
fn bytes_after_a_tls13_server_hello_in_its_record_are_not_parsed() {
    let mut body = tls13_server_hello(0x0017);
    body.extend(sh_done());
    let ev = events_any_chunking(Side::Server, &record(22, &body));
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(matches!(
        ev[0],
        TlsEvent::ServerHello(ServerHello { version: TLS13, .. })
    ));
}

#[test]
fn hello_retry_request_then_compat_ccs_then_clear_server_hello() {
    let mut bytes = record(22, &hello_retry_request(0x0017));
    bytes.extend(record(20, &[1]));
    bytes.extend(record(22, &tls13_server_hello(0x0017)));
    bytes.extend(record(23, &[0x66; 40]));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(
        ev,
        [
            TlsEvent::ServerHello(ServerHello {
                version: TLS13,
                suite: 0x1302,
                hello_retry: true,
                key_share_group: Some(0x0017)
            }),
            TlsEvent::ChangeCipherSpec,
            TlsEvent::ServerHello(ServerHello {
                version: TLS13,
                suite: 0x1301,
                hello_retry: false,
                key_share_group: Some(0x0017)
            }),
            TlsEvent::ApplicationData { len: 40 },
        ]
    );
}

#[test]
fn client_second_hello_after_compat_ccs_is_read() {
    let mut bytes = record_v(22, 0x0301, &tls13_client_hello());
    bytes.extend(record(20, &[1]));
    bytes.extend(record(22, &tls13_client_hello()));
    bytes.extend(record(23, &[0x12; 50]));
    let ev = events_any_chunking(Side::Client, &bytes);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(matches!(ev[0], TlsEvent::ClientHello(_)));
    assert_eq!(ev[1], TlsEvent::ChangeCipherSpec);
    assert!(matches!(&ev[2], TlsEvent::ClientHello(ch) if ch.max_version == TLS13));
    assert_eq!(ev[3], TlsEvent::ApplicationData { len: 50 });
}

#[test]
fn client_that_offered_tls13_but_got_tls12_has_an_encrypted_finished() {
    let mut bytes = record_v(22, 0x0301, &tls13_client_hello());
    bytes.extend(record(22, &handshake(16, &[0x20; 33])));
    bytes.extend(record(20, &[1]));
    // GCM Finished: explicit nonce (sequence 0) then ciphertext.
    let mut fin = vec![0u8; 8];
    fin.extend_from_slice(&[0x9c; 32]);
    bytes.extend(record(22, &fin));
    // A record too short to peek into is encrypted too.
    bytes.extend(record(22, &[1, 0]));
    let ev = events_any_chunking(Side::Client, &bytes);
    assert!(matches!(ev[0], TlsEvent::ClientHello(_)));
    assert_eq!(
        ev[1..],
        [
            TlsEvent::ClientKeyExchange,
            TlsEvent::ChangeCipherSpec,
            TlsEvent::EncryptedHandshake,
            TlsEvent::EncryptedHandshake
        ]
    );
}

#[test]
fn record_split_across_chunks() {
    let bytes = record(22, &sh_done());
    let ev = run_chunks(
        Side::Server,
        &limits(),
        &[&bytes[..2], &bytes[2..4], &bytes[4..7], &bytes[7..]],
    );
    assert_eq!(ev, [TlsEvent::ServerHelloDone]);
    // Nothing is reported before the record is whole.
    let ev = run_chunks(Side::Server, &limits(), &[&bytes[..8]]);
    assert!(ev.is_empty());
}

#[test]
fn several_messages_in_one_record() {
    let mut body = server_hello([0x10; 32], 0x009e, &[]);
    body.extend(handshake(13, &[1, 1, 0, 2, 4, 1, 0, 0]));
    body.extend(sh_done());
    let ev = events_any_chunking(Side::Server, &record(22, &body));
    assert_eq!(
        ev,
        [
            TlsEvent::ServerHello(ServerHello {
                version: TLS12,
                suite: 0x009e,
                hello_retry: false,
                key_share_group: None
            }),
            TlsEvent::CertificateRequest,
            TlsEvent::ServerHelloDone,
        ]
    );
}

#[test]
fn one_message_across_records() {
    let sh = server_hello([0x10; 32], 0xc030, &[ext(0xff01, &[0])]);
    let (a, rest) = sh.split_at(3);
    let (b, c) = rest.split_at(30);
    let mut s = TlsStream::new(Side::Server, &limits());
    let mut ev = Vec::new();
    s.feed(&record(22, a), &mut |e| ev.push(e));
    assert!(ev.is_empty());
    s.feed(&record(22, b), &mut |e| ev.push(e));
    assert!(ev.is_empty());
    let held = s.buffered_bytes();
    assert!(held >= 29 && held <= sh.len() - 4, "{held}");
    s.feed(&record(22, c), &mut |e| ev.push(e));
    assert_eq!(
        ev,
        [TlsEvent::ServerHello(ServerHello {
            version: TLS12,
            suite: 0xc030,
            hello_retry: false,
            key_share_group: None
        })]
    );
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn clear_alerts() {
    // Two alerts in one record, then a warning close_notify alone.
    let mut bytes = record(21, &[2, 40, 1, 0]);
    bytes.extend(record(21, &[1, 0]));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(ev, [alert(2, 40), alert(1, 0), alert(1, 0)]);
}

#[test]
fn short_alert_is_malformed_and_stops() {
    let mut bytes = record(21, &[2, 40, 1]);
    bytes.extend(record(21, &[2, 40]));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(
        ev,
        [TlsEvent::Malformed {
            detail: "short alert"
        }]
    );
    let ev = run(Side::Server, &record(21, &[]));
    assert_eq!(
        ev,
        [TlsEvent::Malformed {
            detail: "short alert"
        }]
    );
}

#[test]
fn alerts_after_ccs_are_encrypted_unless_two_bytes() {
    let mut bytes = record(20, &[1]);
    bytes.extend(record(22, &[0xab; 40]));
    bytes.extend(record(21, &[0xcd; 26]));
    bytes.extend(record(21, &[0xcd; 3]));
    // Two bytes cannot be an encrypted alert: no cipher adds nothing.
    bytes.extend(record(21, &[2, 20]));
    let ev = events_any_chunking(Side::Client, &bytes);
    assert_eq!(
        ev,
        [
            TlsEvent::ChangeCipherSpec,
            TlsEvent::EncryptedHandshake,
            TlsEvent::Alert {
                level: None,
                description: None
            },
            TlsEvent::Alert {
                level: None,
                description: None
            },
            alert(2, 20),
        ]
    );
}

#[test]
fn application_data_is_skipped_without_buffering() {
    let body = vec![0xee; MAX_RECORD_BODY];
    let bytes = record(23, &body);
    let mut s = TlsStream::new(Side::Server, &limits());
    let mut ev = Vec::new();
    for c in bytes.chunks(977) {
        s.feed(c, &mut |e| ev.push(e));
        assert_eq!(s.buffered_bytes(), 0);
    }
    assert_eq!(
        ev,
        [TlsEvent::ApplicationData {
            len: MAX_RECORD_BODY
        }]
    );
    let ev = events_any_chunking(Side::Server, &record(23, &[]));
    assert_eq!(ev, [TlsEvent::ApplicationData { len: 0 }]);
}

#[test]
fn malformed_records() {
    let cases: [(&[u8], &str); 7] = [
        (&[0x63, 0x03, 0x03, 0x00, 0x01, 0x00], "bad content type"),
        (&[0x80, 0x2e, 0x01, 0x03, 0x01], "sslv2"),
        (&[0x16, 0x02, 0x00, 0x00, 0x01], "bad record version"),
        (&[0x16, 0x03, 0x05, 0x00, 0x01], "bad record version"),
        (&[0x17, 0x03, 0x03, 0x48, 0x01], "record too long"),
        (
            &[0x14, 0x03, 0x03, 0x00, 0x02, 0x01, 0x01],
            "bad change_cipher_spec",
        ),
        (&[0x14, 0x03, 0x03, 0x00, 0x00], "bad change_cipher_spec"),
    ];
    for (bytes, detail) in cases {
        let mut b = bytes.to_vec();
        // Whatever follows is not parsed.
        b.extend(record(21, &[2, 40]));
        assert_eq!(
            events_any_chunking(Side::Client, &b),
            [TlsEvent::Malformed { detail }],
            "{bytes:02x?}"
        );
    }
    // The high bit is "sslv2" only on the first record.
    let mut b = record(23, &[0; 4]);
    b.extend_from_slice(&[0x80, 0x2e, 0x01]);
    assert_eq!(
        events_any_chunking(Side::Client, &b),
        [
            TlsEvent::ApplicationData { len: 4 },
            TlsEvent::Malformed {
                detail: "bad content type"
            }
        ]
    );
    // The largest record allowed is fine.
    assert_eq!(
        run(Side::Client, &record(23, &vec![0; MAX_RECORD_BODY])),
        [TlsEvent::ApplicationData {
            len: MAX_RECORD_BODY
        }]
    );
}

#[test]
fn malformed_handshake_messages() {
    for (ty, detail) in [
        (1, "bad client_hello"),
        (2, "bad server_hello"),
        (13, "bad certificate_request"),
    ] {
        let mut bytes = record(22, &handshake(ty, &[0x03, 0x03, 0x00]));
        bytes.extend(record(22, &sh_done()));
        assert_eq!(
            events_any_chunking(Side::Server, &bytes),
            [TlsEvent::Malformed { detail }]
        );
    }
    // A ServerKeyExchange that does not hold the DH parameters its suite implies.
    let mut bytes = hex(DHE_SERVER_HELLO);
    bytes.extend(record(22, &handshake(12, &[0x00, 0x80, 0x01])));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(
        ev[1..],
        [TlsEvent::Malformed {
            detail: "bad server_key_exchange"
        }]
    );
}

#[test]
fn unparsable_certificate_is_silent_and_the_stream_goes_on() {
    let mut cert_msg = vec![0, 0, 10, 0, 0, 7];
    cert_msg.extend_from_slice(b"garbage");
    let mut body = handshake(11, &cert_msg);
    body.extend(sh_done());
    // An empty chain (a client without a certificate) is silent too.
    body.extend(handshake(11, &[0, 0, 0]));
    let ev = events_any_chunking(Side::Server, &record(22, &body));
    assert_eq!(ev, [TlsEvent::ServerHelloDone]);
}

#[test]
fn handshake_message_caps() {
    let small = Limits {
        max_tls_handshake_message: 1000,
        ..Limits::default()
    };
    // A 3000-byte Certificate over three records, then ServerHelloDone.
    let cert_body = vec![0x30; 3000];
    let msg = handshake(11, &cert_body);
    let mut bytes = Vec::new();
    for part in msg.chunks(1100) {
        bytes.extend(record(22, part));
    }
    bytes.extend(record(22, &handshake(13, &vec![0; 1500])));
    bytes.extend(record(22, &handshake(4, &vec![0; 1001])));
    bytes.extend(record(22, &sh_done()));
    for size in [1, 7, 100, bytes.len()] {
        let ev = run_sized(Side::Server, &small, &bytes, size);
        assert_eq!(
            ev,
            [
                TlsEvent::CertificateRequest,
                TlsEvent::NewSessionTicket,
                TlsEvent::ServerHelloDone
            ],
            "chunks of {size}"
        );
    }
    // Messages that must be small are malformed when over the cap.
    let big_hello = client_hello(0x0303, &[0x002f; 600], &[]);
    let ev = run_chunks(Side::Client, &small, &[&record(22, &big_hello)]);
    assert_eq!(
        ev,
        [TlsEvent::Malformed {
            detail: "handshake message too long"
        }]
    );
    // A message just at the cap is parsed; the suites kept are capped, JA4 counts up to 99.
    let at_cap = Limits {
        max_tls_handshake_message: big_hello.len() - 4,
        ..Limits::default()
    };
    let ev = run_chunks(Side::Client, &at_cap, &[&record(22, &big_hello)]);
    let [TlsEvent::ClientHello(ch)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(ch.suites.len(), hello::MAX_SUITES);
    assert!(ch.ja4.starts_with("t12i9900"), "{}", ch.ja4);
}

#[test]
fn buffer_held_while_reassembling_and_freed_on_gap() {
    let mut bytes = hex(MSSQL_SERVER_FLIGHT);
    // Cut inside the Certificate message (ServerHello record is 66 bytes).
    bytes.truncate(66 + 5 + 500);
    let mut s = TlsStream::new(Side::Server, &limits());
    let mut ev = Vec::new();
    s.feed(&bytes, &mut |e| ev.push(e));
    assert_eq!(ev.len(), 1);
    let held = s.buffered_bytes();
    assert!((496..=973).contains(&held), "{held}");
    s.gap();
    assert_eq!(s.buffered_bytes(), 0);
    assert!(s.is_stopped());
    s.feed(&record(22, &sh_done()), &mut |e| ev.push(e));
    assert_eq!(ev.len(), 1);
}

#[test]
fn unknown_handshake_types_and_heartbeats_are_ignored() {
    let mut body = handshake(0, &[]); // HelloRequest
    body.extend(handshake(15, &[4, 1, 0, 2, 0xaa, 0xbb])); // CertificateVerify
    body.extend(handshake(99, &[1, 2, 3]));
    body.extend(sh_done());
    let mut bytes = record(22, &body);
    bytes.extend(record(24, &[1, 0, 16]));
    bytes.extend(record(22, &handshake(16, &[0, 2, 1, 2])));
    let ev = events_any_chunking(Side::Server, &bytes);
    assert_eq!(ev, [TlsEvent::ServerHelloDone, TlsEvent::ClientKeyExchange]);
}

// ---------------------------------------------------------------------------------------------
// Robustness.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Feeds `bytes` in random chunks; checks the buffer cap after every chunk. Returns the events.
fn feed_randomly(rng: &mut XorShift, side: Side, limits: &Limits, bytes: &[u8]) -> Vec<TlsEvent> {
    let mut s = TlsStream::new(side, limits);
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(300));
        let (c, r) = rest.split_at(n);
        rest = r;
        s.feed(c, &mut |e| events.push(e));
        assert!(s.buffered_bytes() <= limits.max_tls_handshake_message);
    }
    let malformed = events
        .iter()
        .filter(|e| matches!(e, TlsEvent::Malformed { .. }))
        .count();
    assert!(malformed <= 1);
    if malformed == 1 {
        assert!(matches!(events.last(), Some(TlsEvent::Malformed { .. })));
        assert_eq!(s.buffered_bytes(), 0);
    }
    events
}

fn valid_flights() -> Vec<(Side, Vec<u8>)> {
    let mut mssql_server = hex(MSSQL_SERVER_FLIGHT);
    mssql_server.extend(hex(MSSQL_SERVER_FINISH));
    let mut mssql_client = hex(MSSQL_CLIENT_HELLO);
    mssql_client.extend(hex(MSSQL_CLIENT_FINISH));
    let mut dhe_server = hex(DHE_SERVER_HELLO);
    dhe_server.extend(hex(DHE_SERVER_KEY_EXCHANGE));
    dhe_server.extend(hex(DHE_SERVER_HELLO_DONE));
    dhe_server.extend(hex(DHE_SERVER_FINISH));
    dhe_server.extend(hex(DHE_SERVER_ENCRYPTED_ALERT));
    let mut tls13_client = record_v(22, 0x0301, &tls13_client_hello());
    tls13_client.extend(record(20, &[1]));
    tls13_client.extend(record(22, &tls13_client_hello()));
    let mut hrr_server = record(22, &hello_retry_request(0x0017));
    hrr_server.extend(record(20, &[1]));
    hrr_server.extend(record(22, &tls13_server_hello(0x0017)));
    vec![
        (Side::Server, mssql_server),
        (Side::Client, mssql_client),
        (Side::Server, dhe_server),
        (Side::Client, hex(NDPI_CLIENT_HELLO)),
        (Side::Client, tls13_client),
        (Side::Server, hrr_server),
    ]
}

#[test]
fn every_truncation_of_a_valid_flight_gives_a_prefix_of_its_events() {
    let l = limits();
    for (side, flight) in valid_flights() {
        let full = run(side, &flight);
        assert!(!full.iter().any(|e| matches!(e, TlsEvent::Malformed { .. })));
        for cut in 0..=flight.len() {
            let mut s = TlsStream::new(side, &l);
            let mut ev = Vec::new();
            s.feed(&flight[..cut], &mut |e| ev.push(e));
            assert!(s.buffered_bytes() <= l.max_tls_handshake_message);
            assert_eq!(ev[..], full[..ev.len()], "cut at {cut}");
            s.gap();
            assert_eq!(s.buffered_bytes(), 0);
        }
    }
}

#[test]
fn random_inputs_do_not_panic_and_respect_caps() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let small = Limits {
        max_tls_handshake_message: 700,
        ..Limits::default()
    };
    let flights = valid_flights();
    let mut seen = [0usize; 5];
    for i in 0..10_000 {
        let side = if i % 2 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let limits = if i % 3 == 0 { small.clone() } else { limits() };
        let bytes: Vec<u8> = match i % 4 {
            // Pure noise.
            0 => (0..rng.below(600)).map(|_| rng.next() as u8).collect(),
            // Records with plausible headers and noisy handshake bodies.
            1 | 2 => {
                let mut b = Vec::new();
                for _ in 0..1 + rng.below(6) {
                    let ty = [20, 21, 22, 22, 22, 23][rng.below(6)];
                    let len = rng.below(400);
                    let mut body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if ty == 22 && len >= 4 {
                        body[0] = [1, 2, 4, 11, 12, 13, 14, 16][rng.below(8)];
                        let m = rng.below(len + 50) as u32;
                        body[1..4].copy_from_slice(&m.to_be_bytes()[1..]);
                    }
                    b.extend(record(ty, &body));
                }
                b
            }
            // A valid flight with a few bytes changed.
            _ => {
                let (_, f) = &flights[rng.below(flights.len())];
                let mut b = f.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                b
            }
        };
        for e in feed_randomly(&mut rng, side, &limits, &bytes) {
            let k = match e {
                TlsEvent::ClientHello(_) => 0,
                TlsEvent::ServerHello(_) => 1,
                TlsEvent::Certificate(_) => 2,
                TlsEvent::Malformed { .. } => 3,
                _ => 4,
            };
            seen[k] += 1;
        }
    }
    // The inputs reached the parsers, not only the record layer.
    assert!(seen.iter().all(|&n| n >= 50), "{seen:?}");
}

/// Equal offers share one parse; an offer that differs in anything the facts read does not.
#[test]
fn client_hello_facts_are_shared_between_equal_offers_only() {
    fn body_of(hello: &[u8]) -> Vec<u8> {
        hello[4..].to_vec()
    }
    let key_share = |fill: u8| {
        let mut ks = 36u16.to_be_bytes().to_vec();
        ks.extend_from_slice(&0x001du16.to_be_bytes());
        ks.extend_from_slice(&32u16.to_be_bytes());
        ks.extend_from_slice(&[fill; 32]);
        ext(51, &ks)
    };
    let hello = |sni: &[u8], fill: u8| {
        client_hello(
            0x0303,
            &[0x1301, 0xc02f],
            &[
                ext_sni(sni),
                ext_supported_versions_client(&[0x0304, 0x0303]),
                key_share(fill),
            ],
        )
    };
    let mut a = body_of(&hello(b"db1.example.com", 1));
    // Another connection of the same client: new random and key share.
    let mut b = body_of(&hello(b"db1.example.com", 2));
    a[2..34].copy_from_slice(&[0xaa; 32]);
    b[2..34].copy_from_slice(&[0xbb; 32]);
    let fa = hello::client_hello_shared(&a).expect("parses");
    let fb = hello::client_hello_shared(&b).expect("parses");
    assert!(
        std::sync::Arc::ptr_eq(&fa, &fb),
        "equal offers share their facts"
    );
    let c = body_of(&hello(b"db2.example.com", 1));
    let fc = hello::client_hello_shared(&c).expect("parses");
    assert!(!std::sync::Arc::ptr_eq(&fa, &fc));
    assert_eq!(fc.sni.as_deref(), Some("db2.example.com"));
    assert_eq!(
        *fa,
        hello::client_hello(&a).expect("parses"),
        "the shared facts are the parse's"
    );
    // A body cut inside its extensions is never answered from the memo.
    let cut = &a[..a.len() - 3];
    assert_eq!(
        hello::client_hello_shared(cut).map(|h| (*h).clone()),
        hello::client_hello(cut)
    );
}
