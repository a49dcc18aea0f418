package store

import (
	"context"

	cp "github.com/roomnet/roomnet/controlplane"
)

// RoomsOfHeadscaleUsers loads the rooms (open or closed) of a shard that
// map onto the given Headscale users, keyed by Headscale user name.
func (s *Store) RoomsOfHeadscaleUsers(ctx context.Context, shard string, users []string) (map[string]cp.Room, error) {
	out := map[string]cp.Room{}
	for len(users) > 0 {
		batch := users[:min(len(users), 500)]
		users = users[len(batch):]
		var rooms []cp.Room
		if err := s.db.WithContext(ctx).Where("shard = ? AND headscale_user IN ?", shard, batch).Find(&rooms).Error; err != nil {
			return nil, err
		}
		for _, r := range rooms {
			out[r.HeadscaleUser] = r
		}
	}
	return out, nil
}

// Usernames names users by id; ids that are not users are left out.
func (s *Store) Usernames(ctx context.Context, ids []uint64) (map[uint64]string, error) {
	out := map[uint64]string{}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		var users []cp.User
		if err := s.db.WithContext(ctx).Select("id", "username").Where("id IN ?", batch).Find(&users).Error; err != nil {
			return nil, err
		}
		for _, u := range users {
			out[u.ID] = u.Username
		}
	}
	return out, nil
}

// JoinKeyByID loads the recorded key of a shard with Headscale id id.
func (s *Store) JoinKeyByID(ctx context.Context, shard string, id uint64) (cp.JoinKey, error) {
	var k cp.JoinKey
	err := s.db.WithContext(ctx).Where("shard = ? AND key_id = ?", shard, id).First(&k).Error
	return k, notFound(err)
}
