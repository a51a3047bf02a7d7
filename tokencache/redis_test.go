package tokencache

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestNewRedisClient(t *testing.T) {
	tests := []struct {
		cfg      RedisConfig
		wantType string
		wantErr  bool
	}{
		{cfg: RedisConfig{URL: "redis://127.0.0.1:6379/0"}, wantType: "*redis.Client"},
		{cfg: RedisConfig{Addrs: []string{"127.0.0.1:26379"}, MasterName: "mymaster"}, wantType: "*redis.Client"}, // Sentinel failover
		{cfg: RedisConfig{Addrs: []string{"a:1", "b:2", "c:3"}}, wantType: "*redis.ClusterClient"},
		{cfg: RedisConfig{}, wantErr: true},
		{cfg: RedisConfig{URL: "redis://x", Addrs: []string{"a:1"}}, wantErr: true},
		{cfg: RedisConfig{URL: "http://user:hunter2secret@host/0"}, wantErr: true},
	}
	for _, tt := range tests {
		c, err := NewRedisClient(tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("NewRedisClient(%+v): got error %v, want error %v", tt.cfg, err, tt.wantErr)
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error echoes the URL's password: %v", err)
			}
			continue
		}
		if got := fmt.Sprintf("%T", c); got != tt.wantType {
			t.Errorf("NewRedisClient(%+v): got %s, want %s", tt.cfg, got, tt.wantType)
		}
		if o, ok := c.(*redis.Client); ok && o.Options().ReadTimeout <= 0 {
			t.Errorf("no read timeout set")
		}
		c.Close()
	}
}
