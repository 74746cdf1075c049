package fooking

// The commands of the two bus transports (Redis, NATS), written once: each
// checks its arguments and hands the messages to the transport, which knows
// where they go (its busSender).

// busSender is what a bus transport sends commands through.
type busSender interface {
	// uidsCommand publishes SEND_UID or KICK_UID for the uids.
	uidsCommand(typ uint16, uids []string, d []byte) error
	publish(msgs []pubMsg) error
	// Where the commands for a gateway worker's SIDs, SEND_ALL and CH_PUB of
	// channel go.
	gwSubject(server, worker int) string
	allSubject() string
	chSubject(channel string) string
}

type busCommands struct{ s busSender }

// Kick closes these clients.
func (b busCommands) Kick(sids []string) error { return b.sidsCommand(TypeKick, sids, nil) }

// SendMsg delivers msg to these clients.
func (b busCommands) SendMsg(sids []string, msg []byte) error {
	return b.sidsCommand(TypeSendMsg, sids, msg)
}

// SendAll delivers msg to every client of every gateway but the exclude SIDs
// (SEND_ALL without exclusions, SEND_ALL_EX with; at most MaxSIDs of them).
func (b busCommands) SendAll(msg []byte, exclude ...string) error {
	if len(exclude) == 0 {
		return b.s.publish([]pubMsg{{b.s.allSubject(), Encode(TypeSendAll, nil, msg)}})
	}
	s, err := excludeList(exclude, MaxSIDs)
	if err != nil {
		return err
	}
	return b.s.publish([]pubMsg{{b.s.allSubject(), Encode(TypeSendAllEx, s, msg)}})
}

// ChAdd makes these clients join channel.
func (b busCommands) ChAdd(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return b.sidsCommand(TypeChAdd, sids, []byte(channel))
}

// ChDel makes these clients leave channel.
func (b busCommands) ChDel(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return b.sidsCommand(TypeChDel, sids, []byte(channel))
}

// ChPub delivers msg to every member of channel but the exclude SIDs (CH_PUB
// without exclusions, CH_PUB_EX with: at most min(MaxSIDs, (65534 -
// len(channel)) / 16) SIDs).
func (b busCommands) ChPub(channel string, msg []byte, exclude ...string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	if len(exclude) == 0 {
		return b.s.publish([]pubMsg{{b.s.chSubject(channel), Encode(TypeChPub, []byte(channel), msg)}})
	}
	s, err := chPubExS(channel, exclude)
	if err != nil {
		return err
	}
	return b.s.publish([]pubMsg{{b.s.chSubject(channel), Encode(TypeChPubEx, s, msg)}})
}

// ---- backend API v2: commands (published, no answer) ----

// BindUid binds the session to uid (replacing the uid it had).
func (b busCommands) BindUid(sid, uid string) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	return b.sidsCommand(TypeBind, []string{sid}, []byte(uid))
}

// UnbindUid makes the session lose its uid.
func (b busCommands) UnbindUid(sid string) error {
	return b.sidsCommand(TypeUnbind, []string{sid}, nil)
}

// SendToUid delivers msg to every session bound to one of uids, each session
// once (Redis: the router's script publishes once to each gateway worker
// holding any of them; NATS: one message on <prefix>u.<uid> per distinct uid,
// which only the workers holding a session of that uid subscribe to).
func (b busCommands) SendToUid(uids []string, msg []byte) error {
	return b.s.uidsCommand(TypeSendUID, uids, msg)
}

// KickUid closes every session bound to one of uids.
func (b busCommands) KickUid(uids ...string) error {
	return b.s.uidsCommand(TypeKickUID, uids, nil)
}

// SetSession sets the session's data, kept by its gateway (0..MaxSession bytes,
// and no more than the gateway's SESSION_MAX_SIZE; empty clears it).
func (b busCommands) SetSession(sid string, data []byte) error {
	if len(data) > MaxSession {
		return argErrorf("fooking: session data is at most %d bytes, got %d", MaxSession, len(data))
	}
	return b.sidsCommand(TypeSessionSet, []string{sid}, data)
}

// sidsCommand splits the SIDs by gateway worker (in order of first appearance),
// at most MaxSIDs per message, and publishes each where that worker listens.
func (b busCommands) sidsCommand(typ uint16, sids []string, d []byte) error {
	if err := checkSIDs(sids); err != nil {
		return err
	}
	var order []string
	groups := map[string][]string{}
	for _, sid := range sids {
		server, worker, err := GatewayOf(sid)
		if err != nil {
			return err
		}
		gw := b.s.gwSubject(server, worker)
		if _, ok := groups[gw]; !ok {
			order = append(order, gw)
		}
		groups[gw] = append(groups[gw], sid)
	}
	var msgs []pubMsg
	for _, gw := range order {
		for _, s := range joinSIDs(groups[gw]) {
			msgs = append(msgs, pubMsg{gw, Encode(typ, s, d)})
		}
	}
	return b.s.publish(msgs)
}
