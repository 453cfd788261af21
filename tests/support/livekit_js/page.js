// A LiveKit app as its authors write one: livekit-client's Room, unchanged, pointed at Roomcast.
// The test drives it through window.lk*; events it saw are kept in window.lkEvents.
window.lkEvents = [];
const note = (...e) => window.lkEvents.push(e);

window.lkJoin = async (url, token, opts = {}) => {
  const room = new LivekitClient.Room(opts.room || {});
  window.room = room;
  room.on('trackSubscribed', (track, pub, p) => {
    note('subscribed', p.identity, track.kind, pub.trackSid);
    const el = track.attach();
    el.muted = true;
    document.body.appendChild(el);
  });
  room.on('trackUnsubscribed', (track, pub, p) => note('unsubscribed', p.identity, track.kind));
  room.on('trackMuted', (pub, p) => note('muted', p.identity, pub.kind));
  room.on('trackUnmuted', (pub, p) => note('unmuted', p.identity, pub.kind));
  room.on('participantConnected', (p) => note('joined', p.identity));
  room.on('participantDisconnected', (p) => note('left', p.identity));
  room.on('dataReceived', (payload, p, kind, topic) =>
    note('data', p ? p.identity : null, topic || null, new TextDecoder().decode(payload)));
  room.on('disconnected', (reason) => note('disconnected', reason));
  room.on('activeSpeakersChanged', (speakers) => note('speakers', speakers.map((p) => p.identity).join(',')));
  await room.connect(url, token, opts.connect || {});
  if (opts.publish) await room.localParticipant.enableCameraAndMicrophone();
  return { sid: room.localParticipant.sid, identity: room.localParticipant.identity, state: room.state };
};

// inbound video frames decoded from every remote participant (RTCPeerConnection.getStats of each receiver)
window.lkFramesDecoded = async (identity) => {
  let frames = 0;
  for (const p of window.room.remoteParticipants.values()) {
    if (identity && p.identity !== identity) continue;
    for (const pub of p.trackPublications.values()) {
      if (pub.kind !== 'video' || !pub.track) continue;
      const report = await pub.track.getRTCStatsReport();
      report?.forEach((s) => { if (s.type === 'inbound-rtp') frames += s.framesDecoded || 0; });
    }
  }
  return frames;
};

window.lkError = async (url, token) => {
  const room = new LivekitClient.Room();
  try {
    await room.connect(url, token, { maxRetries: 0 });
    return { connected: true };
  } catch (e) {
    return { connected: false, name: e.name, message: String(e.message), status: e.status ?? null, reason: e.reason ?? null };
  }
};

// the width of the video frames decoded from ``identity`` now (0: none yet)
window.lkFrameWidth = async (identity) => {
  let width = 0;
  for (const p of window.room.remoteParticipants.values()) {
    if (p.identity !== identity) continue;
    for (const pub of p.trackPublications.values()) {
      if (pub.kind !== 'video' || !pub.track) continue;
      const report = await pub.track.getRTCStatsReport();
      report?.forEach((s) => { if (s.type === 'inbound-rtp') width = Math.max(width, s.frameWidth || 0); });
    }
  }
  return width;
};

window.lkRemoteVideo = (identity) => {
  const p = [...window.room.remoteParticipants.values()].find((x) => x.identity === identity);
  return p ? [...p.trackPublications.values()].find((pub) => pub.kind === 'video') : undefined;
};

window.lkSend = (text, opts) => window.room.localParticipant.publishData(new TextEncoder().encode(text), opts);

window.lkServeRpc = () => window.room.localParticipant.registerRpcMethod(
  'greet', async (data) => 'hello ' + data.callerIdentity + ': ' + data.payload);

window.lkCallRpc = (to, payload) => window.room.localParticipant.performRpc(
  { destinationIdentity: to, method: 'greet', payload, responseTimeout: 5000 });

// [rid, active] of the local camera's encodings (what dynacast turns on and off)
window.lkEncodings = () => {
  const pub = [...window.room.localParticipant.videoTrackPublications.values()][0];
  return pub?.track?.sender ? pub.track.sender.getParameters().encodings.map((e) => [e.rid || '', e.active]) : [];
};
